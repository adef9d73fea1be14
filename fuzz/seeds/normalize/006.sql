SELECT (SELECT max(x) FROM scalar_src) AS m FROM t1
