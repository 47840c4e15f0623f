// citadel-sandbox: started only by citadel::sandbox::Launch (see helper.hpp
// for the protocol); not meant to be run by hand.
#include "sandbox/helper.hpp"

int main() { return citadel::sandbox::RunSandboxHelper(); }
