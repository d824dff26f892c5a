// memory error: a C++ object deleted through a pointer to its base class, which has no
// virtual destructor: the compiler's sized delete passes the base's size, not the
// object's (undefined behaviour that glibc and the default operator delete ignore).
// default: abort "free_sized(): size mismatch"
// hardened: abort "free_sized(): size mismatch"
#include <cstdio>
#include <cstring>

struct Base {
    long id;
};

struct Derived : Base {
    char payload[400];
};

static Base *volatile launder;

int main()
{
    Derived *d = new Derived();
    std::memset(d->payload, 1, sizeof d->payload);
    launder = d;
    Base *b = launder;
    delete b;                               // operator delete(void *, sizeof(Base))
    std::fputs("misuse went unnoticed\n", stderr);
    return 3;
}
