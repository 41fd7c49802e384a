/*
 * tb_bus_tools.h - operator commands that join a running deployment's registry:
 *   turbine routes --join ADDR [--watch SECONDS]   print the route table (and its changes)
 *   turbine call --join ADDR ENDPOINT [--data TEXT] [--timeout MS]
 *                                                  call an endpoint, print each chunk
 */
#ifndef TB_BUS_TOOLS_H
#define TB_BUS_TOOLS_H

/* argv[0] is "routes" or "call".  Exit status 0, 1 (call failed / no answer) or 2 (usage). */
int tb_bus_tools_main(int argc, char **argv);

#endif /* TB_BUS_TOOLS_H */
