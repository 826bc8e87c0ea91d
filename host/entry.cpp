#include "cli.hpp"

int main(int argc, char** argv) { return vguide::host::main(argc, argv); }
