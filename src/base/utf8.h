/** UTF-8: one strict decoder (no overlongs, surrogates or values past U+10FFFF) shared by every
 *  module that checks, cuts or re-encodes text from outside. */
#ifndef BASE_UTF8_H
#define BASE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Decodes one character at s[0..len): returns its length (1..4) and stores the code point,
 *  or returns 0 for an invalid or truncated sequence. */
size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

/** Encodes a valid code point into out[4]; returns the byte count. */
size_t utf8_encode(uint32_t cp, char *out);

/** True if s[0..len) is valid UTF-8. */
bool utf8_valid(const char *s, size_t len);

/** Largest n <= max such that s[0..n) does not end inside a character (s valid, length len). */
size_t utf8_cap(const char *s, size_t len, size_t max);

#endif
