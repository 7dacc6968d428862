#!/bin/sh
# Turns the schema directory into C: the current schema (schema.sql) and
# the numbered migrations (NNN-name.sql, applied in order to reach version
# NNN), as string literals for store.c.
set -e
dir=$1

quote() {
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$1"
}

echo "/* Generated from $(basename "$dir")/ by gen-schema.sh.  Do not edit. */"
echo
echo "static const char schema_sql[] ="
quote "$dir/schema.sql"
echo "    ;"
echo
echo "static const char *const migrations[] = {"
n=0
for f in "$dir"/[0-9][0-9][0-9]-*.sql; do
    n=$((n + 1))
    v=$(basename "$f" | cut -c1-3 | sed 's/^0*//')
    if [ "$v" != "$n" ]; then
        echo "gen-schema: $(basename "$f"): expected migration $n" >&2
        exit 1
    fi
    echo "    /* $(basename "$f") */"
    quote "$f"
    echo "    ,"
done
echo "};"
echo
echo "#define SCHEMA_VERSION $n"
