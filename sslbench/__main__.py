from sslbench.cli import main

main()
