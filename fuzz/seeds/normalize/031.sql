SET search_path TO foo
