WITH recent AS (SELECT * FROM orders WHERE created_at > $1) SELECT * FROM recent r JOIN "Customers" c ON c.id = r.cid
