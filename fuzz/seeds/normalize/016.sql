CREATE TEMP TABLE tmp_x (id int)
