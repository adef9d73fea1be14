SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.aid = a.id) AS sub, generate_series(1, 3) g
