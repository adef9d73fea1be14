ALTER TABLE public.film_category OWNER TO postgres
