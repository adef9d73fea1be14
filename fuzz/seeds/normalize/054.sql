SELECT CAST('abc' AS varchar(10)), '1'::numeric(10,2)
