SELECT * FROM film /* a /* nested */ comment */ WHERE film_id = 7
