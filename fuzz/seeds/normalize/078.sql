ALTER TABLE public.film_actor OWNER TO postgres
