SELECT 'it''s', E'a\nb\x41''a\nb\x41''it''s', E'a\nb\x41', $$x y$$, $tag$ab$tag$, now0, 1e5, B'01?it''s', E'a\nb\x41', $$x y$$, $tag$ab$tag$, now0, 1e5, B'01?1', X'61t', -5, .5
