ALTER TABLE public.rental OWNER TO postgres
