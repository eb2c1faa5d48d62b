/* Docker image references: [host[:port]/]path[:tag][@digest], Docker's grammar
 * (distribution/reference). */
#ifndef FAAS_IMAGEREF_H
#define FAAS_IMAGEREF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char domain[256]; /* "" when none */
    char path[256];   /* "library/x" is not added: as written */
    char tag[129];    /* "" when none */
    char digest[160]; /* "" when none */
} imageref_t;

/* Parses `s`. 0, or -1 with the reason in `why` ("invalid tag 'x'"). */
int imageref_parse(const char *s, imageref_t *out, char *why, size_t whylen);

/* The default function name for an image: its last path component ("hello" for
 * "registry:5000/team/hello:1.0"). */
void imageref_default_name(const imageref_t *r, char *out, size_t outlen);

#endif
