#pragma once
// SQL literal redaction for span attributes such as db.statement / db.query.text: every
// literal becomes `?`, the statement keeps its shape, so that traces still group by query
// without carrying the data the query was run with.

#include <string>
#include <string_view>

namespace spanrelay::processors {

// Replaces with `?`:
// - string literals: '...' (with '' and backslash escapes), and the prefixed forms E'..',
//   N'..', B'..', X'..', U&'..';
// - PostgreSQL dollar-quoted strings: $$...$$, $tag$...$tag$;
// - numbers: 42, -17 (the sign stays), 3.14, .5, 1e-9, 0x1F, 0b101, 1_000;
// - a list of literals in IN (...): `IN (1, 2, 3)` becomes `IN (?)`.
// Removes comments (-- to the end of the line, /* ... */, nested as PostgreSQL allows): they
// may hold data too. Keeps identifiers (also "quoted" and `backticked`), keywords, operators,
// placeholders ($1, ?, :name, %s, %(name)s), TRUE/FALSE/NULL, and the spacing.
// Anything unterminated (a string, a comment, a dollar quote) is redacted to the end. Splits
// only at ASCII characters, so valid UTF-8 stays valid UTF-8.
std::string redact_sql_literals(std::string_view sql);

}  // namespace spanrelay::processors
