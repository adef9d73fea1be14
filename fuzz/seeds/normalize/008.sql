INSERT INTO dst (a, b) SELECT a, b FROM src ON CONFLICT (a) DO UPDATE SET b = excluded.b RETURNING *
