from memsched.cli import main

main()
