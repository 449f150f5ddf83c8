from aejax.cli import main

main()
