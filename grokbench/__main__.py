from grokbench.cli import main

main()
