// The vguide-host executable: everything it does is vguide::host::main (cli.hpp).
#include "cli.hpp"

int main(int argc, char** argv) { return vguide::host::main(argc, argv); }
