SELECT * INTO newtab FROM oldtab
