"""A fixed input and the exact report it must produce."""

# 11 lines: 5 access, 4 app, 2 malformed/empty
SAMPLE = [
    '10.0.0.1 - alice [10/Oct/2023:13:55:36 +0000] "GET /api/users/42?x=1 HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0" 0.120',
    '10.0.0.2 - - [10/Oct/2023:13:55:40 +0000] "GET /api/users/7 HTTP/1.1" 200 100 "-" "curl/8.4.0" 0.030',
    '10.0.0.1 - - [10/Oct/2023:13:55:59 +0000] "POST /api/orders HTTP/1.1" 500 - "-" "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1) Mobile/15E148" 0.900',
    '10.0.0.3 - - [10/Oct/2023:13:56:01 +0000] "GET /static/app.3f9a2b7c1d.js HTTP/1.1" 304 0 "-" "Mozilla/5.0 (compatible; Googlebot/2.1)" 0.002',
    '2023-10-10T13:56:02Z level=error svc=billing path=/api/orders latency_ms=250.5 client=10.0.0.2 msg="payment failed: upstream timeout"',
    '2023-10-10T13:56:30Z level=warning svc=auth path=/login latency_ms=45 client=10.0.0.4 msg="retry login for user after timeout"',
    'this is not a log line',
    '',
    '2023-10-10T13:57:00Z level=info svc=search path=/api/search?q=caf%C3%A9 latency_ms=12 client=10.0.0.2 msg="query café returned 3 results"',
    '10.0.0.4 - bob [10/Oct/2023:13:57:10 +0000] "DELETE /api/orders/99 HTTP/1.1" 404 20 "-" "python-requests/2.31.0" 0.015',
    '2023-10-10T13:57:20Z level=ERROR svc=orders path=/api/orders/99 latency_ms=3000 client=10.0.0.4 msg="deadlock detected, connection refused"',
]

EXPECTED_REPORT = (
    'logstats report\n'
    '===============\n'
    'lines 11, parsed 9, rejected 2\n'
    '\n'
    'kinds\n'
    '  access                          5\n'
    '  app                             4\n'
    '\n'
    'levels\n'
    '  ERROR                           3\n'
    '  INFO                            4\n'
    '  WARN                            1\n'
    '  WARNING                         1\n'
    '\n'
    'status\n'
    '  200                             2\n'
    '  304                             1\n'
    '  404                             1\n'
    '  500                             1\n'
    '\n'
    'latency by path (ms)\n'
    '  path                              count      p50      p90      p99      max\n'
    '  /api/orders                           2    250.5    900.0    900.0    900.0\n'
    '  /api/orders/:id                       2     15.0   3000.0   3000.0   3000.0\n'
    '  /api/search                           1     12.0     12.0     12.0     12.0\n'
    '  /api/users/:id                        2     30.0    120.0    120.0    120.0\n'
    '  /login                                1     45.0     45.0     45.0     45.0\n'
    '\n'
    'latency histogram\n'
    '  <= 15 ms                        2\n'
    '  <= 30 ms                        1\n'
    '  <= 50 ms                        1\n'
    '  <= 125 ms                       1\n'
    '  <= 300 ms                       1\n'
    '  <= 1000 ms                      1\n'
    '  <= 3000 ms                      1\n'
    '\n'
    'latency histogram, all requests\n'
    '  <= 5 ms                         1\n'
    '  <= 15 ms                        2\n'
    '  <= 30 ms                        1\n'
    '  <= 50 ms                        1\n'
    '  <= 125 ms                       1\n'
    '  <= 300 ms                       1\n'
    '  <= 1000 ms                      1\n'
    '  <= 3000 ms                      1\n'
    '\n'
    'top clients\n'
    '  10.0.0.2                        3\n'
    '  10.0.0.4                        3\n'
    '  10.0.0.1                        2\n'
    '\n'
    'top terms\n'
    '  timeout                         2\n'
    '  payment                         1\n'
    '  failed                          1\n'
    '\n'
    'keywords\n'
    '  timeout                         2\n'
    '  failed                          1\n'
    '  refused                         1\n'
    '  retry                           1\n'
    '  deadlock                        1\n'
    '  denied                          0\n'
    '  exception                       0\n'
    '  unavailable                     0\n'
    '  overflow                        0\n'
    '  panic                           0\n'
    '  killed                          0\n'
    '  corrupt                         0\n'
    '\n'
    'messages matching any keyword: 3\n'
    '\n'
    'spikes: 0\n'
    'errors per minute\n'
    '  2023-10-10 13:55      3      1   33.33% /api/orders\n'
    '  2023-10-10 13:56      3      1   33.33% /api/orders\n'
    '  2023-10-10 13:57      3      1   33.33% /api/orders/:id\n'
)
