SELECT count(*) FILTER (WHERE amount > 5), row_number() OVER (PARTITION BY customer_id ORDER BY payment_date DESC) FROM payment
