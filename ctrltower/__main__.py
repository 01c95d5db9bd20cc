from ctrltower.cli import main

main()
