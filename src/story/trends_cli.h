/** The `trends` subcommand: fetch one trend source once (no cache) and print its topics. */
#ifndef STORY_TRENDS_CLI_H
#define STORY_TRENDS_CLI_H

#define TRENDS_USAGE                                                                             \
    "usage: trends --source S [--limit N] [--geo G] [--url U] [options]\n"                      \
    "  Fetches the source once, without the cache, and prints one topic per line:\n"            \
    "  rank, traffic, title, url (or JSON with --json).\n"                                      \
    "  --source S        google | hackernews | wikipedia | rss | youtube | newsapi\n"           \
    "  --limit N         topics to print (1..100, default 20)\n"                                \
    "  --geo G           country: google geo, youtube regionCode, newsapi country (US)\n"      \
    "  --url U           the feed URL for --source rss (http/https)\n"                          \
    "  --mode M          hackernews: algolia (default) or firebase\n"                           \
    "  --project P       wikipedia project (en.wikipedia)\n"                                    \
    "  --date YYYY-MM-DD wikipedia day (default yesterday UTC, falls back one day)\n"         \
    "  --category C      newsapi category (business, sports, technology, ...)\n"               \
    "  --timeout-ms MS   whole-transfer timeout (default 15000)\n"                              \
    "  --json            print a JSON array instead of lines\n"                                 \
    "  Base URLs: TRENDSTORY_GOOGLE_TRENDS_URL, TRENDSTORY_HN_URL, TRENDSTORY_WIKIMEDIA_URL,\n" \
    "  TRENDSTORY_YOUTUBE_URL, TRENDSTORY_NEWSAPI_URL. Keys: TRENDSTORY_YOUTUBE_API_KEY,\n"      \
    "  TRENDSTORY_NEWSAPI_KEY. Exit status 1 when the source fails, 2 on bad usage.\n"

/** Runs the subcommand (argv[0] is "trends"); returns the exit status. */
int trends_cli_main(int argc, char **argv);

#endif
