from stream_eval.cli import main

main()
