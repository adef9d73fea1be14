CALL do_thing(1)
