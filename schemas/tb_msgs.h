/* placeholder until the schema generator lands */
#ifndef TB_MSGS_H
#define TB_MSGS_H
typedef int tb_msg_type_t;
#endif
