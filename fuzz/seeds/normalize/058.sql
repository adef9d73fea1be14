SELECT date_trunc('month', payment_date) m, sum(amount) FROM payment GROUP BY ROLLUP (m) HAVING sum(amount) > 100.00
