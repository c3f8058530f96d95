from kvcalc.commands.app import main

main()
