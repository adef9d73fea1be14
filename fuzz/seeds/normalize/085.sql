ALTER TABLE public.city OWNER TO postgres
