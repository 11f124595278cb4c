from django.db import models


class Counter(models.Model):
    """A named number that every process adds to with one atomic UPDATE.

    Used for statistics when the cache is the database: there a cache "incr" is a read, a
    count of the whole table and a write, on every gallery hit.
    """

    name = models.CharField(max_length=100, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"
