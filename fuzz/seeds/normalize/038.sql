SELECT $1::int + 1, ARRAY[1,2] @> ARRAY[1], data->>'k', e'\n' FROM t WHERE x ILIKE $2
