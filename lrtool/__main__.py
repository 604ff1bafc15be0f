from lrtool.entry import main

main()
