/* Random identifiers (UUID version 4: 122 random bits). */
#ifndef AD_IDS_H
#define AD_IDS_H

/* Canonical dashed form, e.g. 0b5c…-…; out must hold 37 bytes. */
void ids_uuid4(char out[37]);

/* The same randomness as 32 lowercase hex digits; out holds 33 bytes. */
void ids_hex32(char out[33]);

/* 128 random bits (no version bits) as 32 lowercase hex digits, for
 * bearer tokens; out holds 33 bytes. -1 when the kernel gives none. */
int ids_token32(char out[33]);

#endif
