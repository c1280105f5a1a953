from cdtcodec.cli import main

main()
