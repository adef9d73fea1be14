SELECT 'it''s', E'a\nb\x41', $$x y$$, $tag$ab$tag$, 1.50, 1e5, B'0101', X'ff', N'abc', U&'d\0061t', -5, .5
