ALTER TABLE public.address OWNER TO postgres
