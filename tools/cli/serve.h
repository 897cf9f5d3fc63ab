/* serve.h - `vtok serve` (serve.c): an HTTP server for encoders, recipes and chat. */
#ifndef VTOK_CLI_SERVE_H
#define VTOK_CLI_SERVE_H

int cli_serve(int argc, char **argv); /* vtok serve ... */

#endif
