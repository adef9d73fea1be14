ALTER TABLE public.film OWNER TO postgres
