// photon/common/object.h: photon::Object, the root of PhotonLibOS's
// interfaces: something deleted through a base pointer.
#ifndef PHOTON_CPP_COMMON_OBJECT_H
#define PHOTON_CPP_COMMON_OBJECT_H

namespace photon {

/// An object owned through an interface pointer: `delete obj` releases it.
class Object {
public:
    virtual ~Object() = default;
};

}  // namespace photon

#endif  // PHOTON_CPP_COMMON_OBJECT_H
