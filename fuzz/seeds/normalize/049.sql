SELECT * FROM unnest($1::int[]) AS u(id) JOIN t USING (id)
