SELECT substring(title from 2 for 3), extract(year from rental_date), position('a' in title) FROM film, rental
