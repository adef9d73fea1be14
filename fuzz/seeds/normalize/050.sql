SELECT * FROM tenant_a.users u, "Tenant B"."Users" v
