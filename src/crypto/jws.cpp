#include "hallmark/crypto/jws.hpp"
