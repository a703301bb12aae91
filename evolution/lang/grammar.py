"""The grammar of `.tars` scripts, in Lark's EBNF (LALR(1): one token of lookahead).

Kept as a string in a module so the language ships with the code (no package data) and
the grammar in docs/language.md can be checked against it.  Newlines end statements;
inside ``( )`` and ``[ ]``, and before a ``|`` or an ``else``, they are dropped by the
parser's post-lexer, so a long call, list or union may span lines.  Maps are written ``["k": v]`` (``[:]`` empty, as in Swift) so that
``{`` always opens a block and never a value: that keeps the grammar LALR.
"""

GRAMMAR = r"""
start: _NL? (_decl (_NL _decl)* _NL?)?

_decl: genome_from | genome_inline | record_decl | union_decl | fn_decl | prompt_decl
     | source_decl | tune_decl | evolve_decl | let_stmt | server_decl | call_expr

genome_from: "genome" NAME "from" STRING
genome_inline: "genome" NAME settings
settings: "{" _NL? (_setting (_NL _setting)* _NL?)? "}"
_setting: setting | setting_group | handler
setting: NAME "=" expr
       | PROMPT "=" expr
PROMPT: "prompt"
setting_group: NAME settings
handler: "on" NAME "(" [params] ")" block

record_decl: "record" NAME "(" [params] ")"
union_decl: "type" NAME "=" "|"? variant ("|" variant)*
variant: NAME ["(" [params] ")"]
params: param ("," param)* ","?
param: NAME ":" type_ref

fn_decl: "fn" NAME "(" [params] ")" "->" type_ref (block | "=" expr)
prompt_decl: PROMPT NAME "(" [params] ")" "->" type_ref (LONG_STRING | STRING)
source_decl: "source" NAME ":" type_ref ("=" expr | "(" [args] ")")
tune_decl: "tune" NAME ":" type_ref "in" (range_lit | list_lit) "=" expr
range_lit: sum ".." sum
evolve_decl: "evolve" NAME settings
server_decl: "server" NAME ["(" [names] ")"] "=" expr
names: NAME ("," NAME)* ","?

type_ref: NAME ["<" type_ref ("," type_ref)* ">"] [QMARK]
QMARK: "?"

block: "{" _NL? (_stmt (_NL _stmt)* _NL?)? "}"
_stmt: let_stmt | return_stmt | _action | expr
let_stmt: "let" NAME [":" type_ref] "=" expr
return_stmt: "return" [expr]
_action: deploy | notify | stop
deploy: "deploy" postfix
notify: "notify" expr
stop: "stop" [expr]

?expr: if_expr | match_expr | call_expr | or_expr
call_expr: "call" ["<" type_ref ">"] NAME "." NAME "(" [args] ")"
if_expr: "if" expr block ["else" (block | if_expr)]
match_expr: "match" expr "{" _NL? arm ((_NL | "," _NL?) arm)* (_NL | "," _NL?)? "}"
arm: pattern ["if" expr] "->" (expr | block | _action)
?pattern: NAME "(" [pattern ("," pattern)*] ")" -> ctor_pattern
        | NAME -> name_pattern
        | literal -> literal_pattern
        | MINUS (INT | FLOAT) -> negative_pattern

?or_expr: and_expr | or_expr OR and_expr -> binop
?and_expr: not_expr | and_expr AND not_expr -> binop
?not_expr: compare | NOT not_expr -> unop
?compare: coalesce | coalesce (EQ | NE | LE | GE | LT | GT | IN) coalesce -> binop
?coalesce: sum | sum COALESCE coalesce -> binop
?sum: product | sum (PLUS | MINUS) product -> binop
?product: unary | product MUL unary -> binop
?unary: postfix | MINUS unary -> unop
?postfix: atom
        | postfix "." NAME -> field
        | postfix "(" [args] ")" -> call
        | postfix "[" expr "]" -> index
args: arg ("," arg)* ","?
arg: expr -> positional
   | NAME "=" expr -> keyword
?atom: literal
     | NAME -> name
     | "(" expr ")"
     | list_lit
     | "[" ":" "]" -> map_lit
     | "[" entry ("," entry)* ","? "]" -> map_lit
list_lit: "[" [expr ("," expr)* ","?] "]"
entry: expr ":" expr
literal: INT | FLOAT | STRING | LONG_STRING | TRUE | FALSE | NONE
TRUE: "true"
FALSE: "false"
NONE: "none"

OR: "or"
AND: "and"
NOT: "not"
EQ: "=="
NE: "!="
LE: "<="
GE: ">="
LT: "<"
GT: ">"
IN: "in"
COALESCE: "??"
PLUS: "+"
MINUS: "-"
MUL: "*" | "/" | "%"

NAME: /[A-Za-z_][A-Za-z0-9_]*/
FLOAT.2: /[0-9]+\.[0-9]+([eE][+-]?[0-9]+)?/ | /[0-9]+[eE][+-]?[0-9]+/
INT: /[0-9]+/
LONG_STRING.3: /\"\"\"(.|\n)*?\"\"\"/
STRING: /"([^"\\\n]|\\.)*"/
COMMENT: /#[^\n]*/
_NL: (/\r?\n[\t ]*/ | COMMENT)+

%ignore /[\t \f]+/
%ignore COMMENT
"""
