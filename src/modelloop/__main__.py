from modelloop.cli import main

main()
