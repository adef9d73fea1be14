SELECT * FROM t WHERE (a, b) IN (SELECT a, b FROM u) AND c = (SELECT min(c) FROM v)
