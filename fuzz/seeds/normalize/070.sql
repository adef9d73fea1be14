CREATE VIEW legacy.rental AS
 SELECT rental_id,
    lower(rental_period) AS rental_date,
    inventory_id,
    customer_id,
    upper(rental_period) AS return_date,
    staff_id,
    last_update
   FROM public.rental
