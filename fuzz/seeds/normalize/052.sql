SELECT CASE WHEN length > 10 THEN '''' ELSE 'x' END FROM film
