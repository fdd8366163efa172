/*
 * table: plain text columns for people.  Columns are left-aligned and
 * separated by two spaces; the last one is not padded, so lines carry no
 * trailing blanks.  Widths count UTF-8 characters, not bytes.  No colors:
 * the output reads the same in a terminal, a pipe or a file.
 */
#ifndef SK_CLI_TABLE_H
#define SK_CLI_TABLE_H

#include <stddef.h>

#include "util/buf.h"

typedef struct table {
	size_t ncols;
	size_t nrows;  /* the header row included */
	char **cells;  /* nrows * ncols, owned */
} table;

void table_init(table *t, size_t ncols, const char *const *headers);
/* Copies ncols cells; a NULL cell prints as "-". */
void table_add(table *t, const char *const *cells);
void table_render(const table *t, sk_buf *out);
void table_release(table *t);

#endif
